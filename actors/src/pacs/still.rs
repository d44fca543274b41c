//! A pedal still as a DICOM VL Endoscopic Image (SOP class
//! 1.2.840.10008.5.1.4.1.1.77.1.1, PS3.3 A.32.1): uncompressed RGB, the
//! patient and exam from the exam info, the AI's findings in the image
//! comments.
//!
//! Identifiers (PS3.5 B.2, UUID-derived `2.25.` UIDs):
//! - one study per exam: the worklist's Study Instance UID when the exam
//!   came from the worklist, else derived from the exam number alone, so
//!   every tower of the same exam files into the same study;
//! - one series per tower within the exam: derived from exam and tower;
//! - one instance per still: derived from exam, tower, press time and
//!   frame, so a still written or sent again keeps its UID (a PACS stores it
//!   once).

use crate::video::archive::ExamInfo;
use crate::video::detection::Detection;
use crate::video::frame::Frame;
use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileDicomObject, FileMetaTableBuilder, InMemDicomObject};
use sha2::{Digest, Sha256};

/// VL Endoscopic Image Storage.
pub const VL_ENDOSCOPIC_IMAGE: &str = "1.2.840.10008.5.1.4.1.1.77.1.1";
/// Explicit VR Little Endian: how stills are kept in the outbox.
pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
/// Implicit VR Little Endian: the default every PACS accepts.
pub const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
/// This implementation (a UUID-derived UID, fixed).
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.189201872519403735226381307924462118617";

/// A `2.25.` UID from the digest of `parts` (the first 128 bits).
pub fn derived_uid(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    format!("2.25.{}", u128::from_be_bytes(b))
}

/// The exam's Study Instance UID.
pub fn study_uid(exam: &ExamInfo) -> String {
    if exam.study_uid.is_empty() {
        derived_uid(&["endotower study", &exam.number])
    } else {
        exam.study_uid.clone()
    }
}

/// UTC `YYYYMMDD` and `HHMMSS.ffffff` of a Unix time in ms.
pub fn dicom_date_time(unix_ms: u64) -> (String, String) {
    let secs = unix_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let date = format!("{y:04}{m:02}{d:02}");
    let time = format!("{:02}{:02}{:02}.{:06}", rem / 3600, rem % 3600 / 60, rem % 60, (unix_ms % 1000) * 1000);
    (date, time)
}

/// What goes into one still besides the picture.
pub struct StillContext<'a> {
    pub exam: &'a ExamInfo,
    pub tower_id: &'a str,
    pub time_unix_ms: u64,
    /// `None`: the still was not analysed.
    pub detections: Option<&'a [Detection]>,
}

impl StillContext<'_> {
    pub fn sop_instance_uid(&self, frame_seq: u64) -> String {
        derived_uid(&["endotower still", &self.exam.number, self.tower_id, &self.time_unix_ms.to_string(), &frame_seq.to_string()])
    }
}

fn text(tag: dicom_core::Tag, vr: VR, v: impl Into<String>) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, PrimitiveValue::from(v.into()))
}

/// The AI's findings as one line (Image Comments, LT).
fn findings(d: Option<&[Detection]>) -> String {
    match d {
        None => "AI: not analysed".into(),
        Some([]) => "AI: no lesion detected".into(),
        Some(d) => {
            let each: Vec<String> =
                d.iter().map(|d| format!("{} {:.2} box {:.0},{:.0},{:.0},{:.0}", d.class_name, d.score, d.x0, d.y0, d.x1, d.y1)).collect();
            format!("AI (decision support, not a diagnosis): {}", each.join("; "))
        }
    }
}

/// The still as a DICOM file object (Part 10, Explicit VR Little Endian).
/// The frame must be RGB8 (the archive's frames are).
pub fn vl_endoscopic_image(frame: &Frame, ctx: &StillContext<'_>) -> Result<FileDicomObject<InMemDicomObject>, String> {
    let exam = ctx.exam;
    let expected = frame.width as usize * frame.height as usize * 3;
    if frame.pixels.len() != expected {
        return Err(format!(
            "frame {}: {} bytes, expected {expected} for RGB8 {}x{}",
            frame.seq,
            frame.pixels.len(),
            frame.width,
            frame.height
        ));
    }
    let (date, time) = dicom_date_time(ctx.time_unix_ms);
    let sop_uid = ctx.sop_instance_uid(frame.seq);
    let mut o = InMemDicomObject::new_empty();
    // SOP Common
    o.put(text(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192"));
    o.put(text(tags::SOP_CLASS_UID, VR::UI, VL_ENDOSCOPIC_IMAGE));
    o.put(text(tags::SOP_INSTANCE_UID, VR::UI, sop_uid.clone()));
    o.put(text(tags::INSTANCE_CREATION_DATE, VR::DA, date.clone()));
    o.put(text(tags::INSTANCE_CREATION_TIME, VR::TM, time.clone()));
    // Patient
    o.put(text(tags::PATIENT_NAME, VR::PN, exam.patient_name.clone()));
    o.put(text(tags::PATIENT_ID, VR::LO, exam.patient_id.clone()));
    o.put(text(tags::PATIENT_BIRTH_DATE, VR::DA, ""));
    let sex = match exam.sex.as_str() {
        "F" => "F",
        "M" => "M",
        "X" => "O",
        _ => "",
    };
    o.put(text(tags::PATIENT_SEX, VR::CS, sex));
    if exam.age > 0 {
        o.put(text(tags::PATIENT_AGE, VR::AS, format!("{:03}Y", exam.age.min(999))));
    }
    // General Study
    o.put(text(tags::STUDY_INSTANCE_UID, VR::UI, study_uid(exam)));
    o.put(text(tags::STUDY_DATE, VR::DA, date.clone()));
    o.put(text(tags::STUDY_TIME, VR::TM, time.clone()));
    o.put(text(tags::REFERRING_PHYSICIAN_NAME, VR::PN, ""));
    o.put(text(tags::STUDY_ID, VR::SH, exam.number.chars().take(16).collect::<String>()));
    o.put(text(tags::ACCESSION_NUMBER, VR::SH, exam.number.chars().take(16).collect::<String>()));
    o.put(text(tags::STUDY_DESCRIPTION, VR::LO, exam.procedure.to_string()));
    // General Series: one per tower in the exam.
    o.put(text(tags::MODALITY, VR::CS, "ES"));
    o.put(text(tags::SERIES_INSTANCE_UID, VR::UI, derived_uid(&["endotower series", &exam.number, ctx.tower_id])));
    o.put(text(tags::SERIES_NUMBER, VR::IS, "1"));
    // General Equipment
    o.put(text(tags::MANUFACTURER, VR::LO, "endotower"));
    o.put(text(tags::STATION_NAME, VR::SH, ctx.tower_id.chars().take(16).collect::<String>()));
    o.put(text(tags::SOFTWARE_VERSIONS, VR::LO, env!("CARGO_PKG_VERSION")));
    // General Image, Acquisition Context, VL Image
    o.put(text(tags::INSTANCE_NUMBER, VR::IS, (frame.seq % 1_000_000_000).to_string()));
    o.put(text(tags::PATIENT_ORIENTATION, VR::CS, ""));
    o.put(text(tags::CONTENT_DATE, VR::DA, date.clone()));
    o.put(text(tags::CONTENT_TIME, VR::TM, time.clone()));
    o.put(text(tags::ACQUISITION_DATE_TIME, VR::DT, format!("{date}{time}")));
    o.put(DataElement::new(tags::ACQUISITION_CONTEXT_SEQUENCE, VR::SQ, DataSetSequence::<InMemDicomObject>::empty()));
    o.put(DataElement::new(tags::IMAGE_TYPE, VR::CS, PrimitiveValue::Strs(["ORIGINAL".to_string(), "PRIMARY".to_string()].into())));
    o.put(text(tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00"));
    o.put(text(tags::IMAGE_COMMENTS, VR::LT, findings(ctx.detections)));
    // Image Pixel: RGB, 8 bits, colour-by-pixel.
    o.put(DataElement::new(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(3u16)));
    o.put(text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "RGB"));
    o.put(DataElement::new(tags::PLANAR_CONFIGURATION, VR::US, PrimitiveValue::from(0u16)));
    let rows = u16::try_from(frame.height).map_err(|_| format!("frame {}: height {} exceeds DICOM rows", frame.seq, frame.height))?;
    let cols = u16::try_from(frame.width).map_err(|_| format!("frame {}: width {} exceeds DICOM columns", frame.seq, frame.width))?;
    o.put(DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(rows)));
    o.put(DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(cols)));
    o.put(DataElement::new(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(8u16)));
    o.put(DataElement::new(tags::BITS_STORED, VR::US, PrimitiveValue::from(8u16)));
    o.put(DataElement::new(tags::HIGH_BIT, VR::US, PrimitiveValue::from(7u16)));
    o.put(DataElement::new(tags::PIXEL_REPRESENTATION, VR::US, PrimitiveValue::from(0u16)));
    let mut pixels = frame.pixels.to_vec();
    if pixels.len() % 2 == 1 {
        pixels.push(0); // OB values have even length
    }
    o.put(DataElement::new(tags::PIXEL_DATA, VR::OB, PrimitiveValue::U8(pixels.into())));
    let meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(VL_ENDOSCOPIC_IMAGE)
        .media_storage_sop_instance_uid(sop_uid)
        .transfer_syntax(EXPLICIT_VR_LE)
        .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
        .implementation_version_name("ENDOTOWER");
    o.with_meta(meta).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::frame::PixelFormat;
    use std::sync::Arc;
    use std::time::Instant;

    fn exam(number: &str) -> ExamInfo {
        ExamInfo { number: number.into(), sex: "F".into(), age: 61, patient_id: "P-1001".into(), ..ExamInfo::default() }
    }

    #[test]
    fn dates_and_times_are_utc_in_dicom_form() {
        assert_eq!(dicom_date_time(0), ("19700101".into(), "000000.000000".into()));
        // 2026-12-07 14:05:09.123 UTC
        assert_eq!(dicom_date_time(1_796_652_309_123), ("20261207".into(), "140509.123000".into()));
        // 2024-02-29 (a leap day) 23:59:59
        assert_eq!(dicom_date_time(1_709_251_199_000).0, "20240229");
    }

    #[test]
    fn one_study_per_exam_one_series_per_tower_and_a_stable_uid_per_still() {
        let (a, b) = (exam("E-1"), exam("E-2"));
        assert_eq!(study_uid(&a), study_uid(&exam("E-1")));
        assert_ne!(study_uid(&a), study_uid(&b));
        let wl = ExamInfo { study_uid: "1.2.826.0.1.3680043.10.1234.17".into(), ..exam("E-1") };
        assert_eq!(study_uid(&wl), "1.2.826.0.1.3680043.10.1234.17", "the worklist's study wins");
        let uid = derived_uid(&["x"]);
        assert!(uid.len() <= 64 && uid.starts_with("2.25.") && uid[5..].chars().all(|c| c.is_ascii_digit()), "{uid}");
        let ctx = |tower, t| StillContext { exam: &a, tower_id: tower, time_unix_ms: t, detections: None };
        assert_eq!(ctx("or-1", 5).sop_instance_uid(7), ctx("or-1", 5).sop_instance_uid(7));
        assert_ne!(ctx("or-1", 5).sop_instance_uid(7), ctx("or-2", 5).sop_instance_uid(7));
        assert_ne!(ctx("or-1", 5).sop_instance_uid(7), ctx("or-1", 6).sop_instance_uid(7));
    }

    #[test]
    fn a_still_is_a_vl_endoscopic_image_that_reads_back_with_its_pixels() {
        let px: Vec<u8> = (0..17 * 17 * 3).map(|i| i as u8).collect();
        let f = Frame::new(9, Instant::now(), 17, 17, PixelFormat::Rgb8, Arc::new(px.clone())).unwrap();
        let e = exam("E-9");
        let ctx = StillContext { exam: &e, tower_id: "or-1", time_unix_ms: 1_796_652_309_123, detections: Some(&[]) };
        let obj = vl_endoscopic_image(&f, &ctx).unwrap();
        let path = std::env::temp_dir().join(format!("endotower-still-{}.dcm", std::process::id()));
        obj.write_to_file(&path).unwrap();
        let back = dicom_object::open_file(&path).unwrap();
        let s = |t| back.element(t).unwrap().to_str().unwrap().trim_end_matches(['\0', ' ']).to_string();
        assert_eq!(s(tags::SOP_CLASS_UID), VL_ENDOSCOPIC_IMAGE);
        assert_eq!(back.meta().media_storage_sop_class_uid().trim_end_matches('\0'), VL_ENDOSCOPIC_IMAGE);
        assert_eq!((s(tags::PATIENT_ID), s(tags::ACCESSION_NUMBER), s(tags::MODALITY)), ("P-1001".into(), "E-9".into(), "ES".into()));
        assert_eq!((s(tags::PATIENT_SEX), s(tags::PATIENT_AGE)), ("F".into(), "061Y".into()));
        assert_eq!(s(tags::STUDY_INSTANCE_UID), study_uid(&e));
        assert_eq!(s(tags::IMAGE_COMMENTS), "AI: no lesion detected");
        assert_eq!(back.element(tags::ROWS).unwrap().to_int::<u16>().unwrap(), 17);
        let data = back.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap();
        assert_eq!((data.len(), &data[..867]), (868, &px[..]), "odd length padded to even, pixels unchanged");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_frame_of_the_wrong_size_is_refused_naming_it() {
        let f = Frame::new(4, Instant::now(), 16, 16, PixelFormat::Rgb8, Arc::new(vec![0; 16 * 16 * 3])).unwrap();
        let e = exam("E-1");
        let ctx = StillContext { exam: &e, tower_id: "or-1", time_unix_ms: 0, detections: None };
        assert!(vl_endoscopic_image(&f, &ctx).is_ok());
        let bad = Frame { pixels: Arc::new(vec![0; 5]), ..f };
        let err = vl_endoscopic_image(&bad, &ctx).unwrap_err();
        assert!(err.contains("frame 4") && err.contains("5 bytes"), "{err}");
    }
}
