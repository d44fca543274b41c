//! A detector's model card: where the model may raise lesion alarms.
//!
//! The card sits next to the model (`lesion_detector.onnx` ->
//! `lesion_detector.card.toml`) and says what the model is (`status`: a
//! `demo` trained on synthetic frames, or `validated`), what it was trained
//! on, its classes (in output order) and the procedure types it is valid for.
//! The tower raises lesion alarms only where the exam's procedure is one of
//! them ([`lesion_alarms`]); everywhere else the boxes are still drawn, but
//! nothing is marked high-risk and no alarm sounds. A model without a card
//! never raises an alarm: the tower cannot know where it is valid.
//!
//! Bring your own detector: a card with a `[detector]` table (the same
//! fields as `[video.inference.detector]`: input and output names, input
//! size, normalisation, `resize = "squash" | "letterbox"`, `format =
//! "prob_map" | "yolo" | "yolo_nms"`, class names, thresholds) and
//! optionally `high_risk_classes` / `high_risk_threshold` replaces the
//! configured contract ([`crate::video::inference::InferenceConfig::apply_card`]),
//! so a YOLO export runs without a change to the tower's config beyond
//! `detector_model`.

use super::detection::DetectorContract;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// The kind of exam, from the exam info.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Procedure {
    /// Not given: no lesion alarms.
    #[default]
    Unspecified,
    Colonoscopy,
    Gastroscopy,
    Laparoscopy,
}

impl fmt::Display for Procedure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Procedure::Unspecified => "unspecified",
            Procedure::Colonoscopy => "colonoscopy",
            Procedure::Gastroscopy => "gastroscopy",
            Procedure::Laparoscopy => "laparoscopy",
        })
    }
}

/// What the model is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelStatus {
    /// A demonstration (e.g. trained on synthetic frames): shown as "DEMO".
    Demo,
    /// Validated for the listed procedures by whoever ships it.
    Validated,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCard {
    pub name: String,
    pub status: ModelStatus,
    /// Provenance of the training data, in words.
    pub trained_on: String,
    /// Procedure types where its lesion alarms are valid.
    pub procedures: Vec<Procedure>,
    /// Class names in output order; must equal the configured contract's
    /// (may be left out when the card has a `[detector]` table).
    #[serde(default)]
    pub classes: Vec<String>,
    #[serde(default)]
    pub notes: String,
    /// The model's own contract, replacing `[video.inference.detector]`.
    #[serde(default)]
    pub detector: Option<DetectorContract>,
    /// Replace the configured high-risk classes and threshold.
    #[serde(default)]
    pub high_risk_classes: Option<Vec<String>>,
    #[serde(default)]
    pub high_risk_threshold: Option<f32>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CardError {
    #[error("model card {file}: {message}")]
    Read { file: String, message: String },
    #[error("model card {file}: `{field}`: {message}")]
    Field { file: String, field: &'static str, message: String },
}

impl ModelCard {
    /// The card's path for `model`.
    pub fn path_for(model: &Path) -> PathBuf {
        model.with_extension("card.toml")
    }

    /// The card of `model`, consistent in itself; `None` when the model has
    /// none.
    pub fn read(model: &Path) -> Result<Option<ModelCard>, CardError> {
        let path = Self::path_for(model);
        let file = path.display().to_string();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CardError::Read { file, message: e.to_string() }),
        };
        let mut card: ModelCard = toml::from_str(&text).map_err(|e| CardError::Read { file: file.clone(), message: e.to_string() })?;
        let field = |field, message: String| Err(CardError::Field { file: file.clone(), field, message });
        if let Some(d) = &card.detector {
            if card.classes.is_empty() {
                card.classes = d.classes.clone();
            } else if card.classes != d.classes {
                return field("classes", format!("{:?} differ from detector.classes {:?}", card.classes, d.classes));
            }
            if !matches!(d.input_size, 16..=2048) {
                return field("detector.input_size", format!("{}: expected 16 ..= 2048 px", d.input_size));
            }
            if let Some((i, s)) = d.std.iter().enumerate().find(|(_, s)| !(**s > 0.0)) {
                return field("detector.std", format!("[{i}] = {s}: expected a positive number"));
            }
        }
        if card.classes.is_empty() {
            return field("classes", "at least one class (or a [detector] table with its classes)".into());
        }
        if let Some(h) = card.high_risk_classes.iter().flatten().find(|h| !card.classes.contains(h)) {
            return field("high_risk_classes", format!("{h:?} is not one of {:?}", card.classes));
        }
        if let Some(t) = card.high_risk_threshold.filter(|t| !(0.0..=1.0).contains(t)) {
            return field("high_risk_threshold", format!("{t}: expected 0 ..= 1"));
        }
        Ok(Some(card))
    }

    /// The card of `model`, checked against the configured `classes`;
    /// `None` when the model has none.
    pub fn load(model: &Path, classes: &[String]) -> Result<Option<ModelCard>, CardError> {
        let Some(card) = Self::read(model)? else { return Ok(None) };
        card.validate(&Self::path_for(model).display().to_string(), classes)?;
        Ok(Some(card))
    }

    fn validate(&self, file: &str, classes: &[String]) -> Result<(), CardError> {
        let field = |field, message: String| Err(CardError::Field { file: file.to_string(), field, message });
        if self.name.trim().is_empty() {
            return field("name", "must not be empty".into());
        }
        if self.trained_on.trim().is_empty() {
            return field("trained_on", "must say what the model was trained on".into());
        }
        if self.procedures.contains(&Procedure::Unspecified) {
            return field("procedures", "\"unspecified\" is not a procedure type".into());
        }
        if self.classes != classes {
            return field("classes", format!("{:?} differ from the configured detector classes {classes:?}", self.classes));
        }
        Ok(())
    }
}

/// Whether lesion alarms may be raised for `procedure` with this model;
/// `Err` says why not (shown on screen and sent with every AI result).
pub fn lesion_alarms(card: Option<&ModelCard>, procedure: Procedure) -> Result<(), String> {
    let Some(card) = card else { return Err("model has no card".into()) };
    if procedure == Procedure::Unspecified {
        return Err("no procedure in the exam info".into());
    }
    if !card.procedures.contains(&procedure) {
        return Err(format!("model not valid for {procedure}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(procedures: Vec<Procedure>) -> ModelCard {
        ModelCard {
            name: "m".into(),
            status: ModelStatus::Demo,
            trained_on: "synthetic".into(),
            procedures,
            classes: vec!["adenoma".into()],
            notes: String::new(),
            detector: None,
            high_risk_classes: None,
            high_risk_threshold: None,
        }
    }

    #[test]
    fn hz026_lesion_alarms_only_for_a_procedure_on_the_card() {
        let c = card(vec![Procedure::Colonoscopy]);
        assert_eq!(lesion_alarms(Some(&c), Procedure::Colonoscopy), Ok(()));
        assert_eq!(lesion_alarms(Some(&c), Procedure::Laparoscopy).unwrap_err(), "model not valid for laparoscopy");
        assert!(lesion_alarms(Some(&c), Procedure::Unspecified).is_err());
        assert!(lesion_alarms(None, Procedure::Colonoscopy).is_err());
    }

    #[test]
    fn a_bad_card_names_its_file_and_field() {
        let dir = std::env::temp_dir().join(format!("endotower-card-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let model = dir.join("m.onnx");
        assert_eq!(ModelCard::load(&model, &["adenoma".into()]), Ok(None), "no card: none");
        let write = |text: &str| std::fs::write(ModelCard::path_for(&model), text).unwrap();
        write("name = \"m\"\nstatus = \"demo\"\ntrained_on = \"synthetic\"\nprocedures = [\"colonoscopy\"]\nclasses = [\"adenoma\"]\n");
        assert_eq!(ModelCard::load(&model, &["adenoma".into()]).unwrap().unwrap().procedures, [Procedure::Colonoscopy]);
        let e = ModelCard::load(&model, &["adenoma".into(), "ulcer".into()]).unwrap_err().to_string();
        assert!(e.contains("m.card.toml") && e.contains("`classes`"), "{e}");
        write("name = \"m\"\nstatus = \"demo\"\ntrained_on = \"synthetic\"\nprocedures = [\"arthroscopy\"]\nclasses = [\"adenoma\"]\n");
        let e = ModelCard::load(&model, &["adenoma".into()]).unwrap_err().to_string();
        assert!(e.contains("procedures") && e.contains("arthroscopy"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
