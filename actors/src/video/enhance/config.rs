//! The `[video.enhance]` section.

use crate::config::{check_int, check_range, ConfigError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnhanceConfig {
    /// On at start (it can be switched at run time: HMI key E).
    pub enabled: bool,
    /// A frame is shown at the latest this long after capture, enhanced or
    /// not (one to two frame intervals).
    pub budget_ms: u64,
    /// A frame in the worker longer than this is a hang: the stage restarts.
    pub hang_ms: u64,
    pub threads: usize,
    /// `sharpness.onnx` contract: `image` [1,3,224,224] -> `sharp_prob` [1,1].
    pub sharpness_model: String,
    /// Below this probability of being sharp, a frame is deblurred.
    pub sharp_threshold: f32,
    /// `site_classifier.onnx` contract: `image` [1,3,32,32] -> `site_prob` [1,K].
    pub site_model: String,
    pub sites: Vec<String>,
    /// `deblur.onnx` contract: `luma` [1,1,H,W] -> `luma_sharp` [1,1,H,W],
    /// at 1/`deblur_scale` of the frame size.
    pub deblur_model: String,
    pub deblur_scale: u32,
}

impl Default for EnhanceConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            budget_ms: 16,
            hang_ms: 250,
            threads: 1,
            sharpness_model: "models/sharpness.onnx".into(),
            sharp_threshold: 0.5,
            site_model: "models/site_classifier.onnx".into(),
            sites: vec!["esophagus".into(), "stomach".into(), "colon".into()],
            deblur_model: "models/deblur.onnx".into(),
            deblur_scale: 2,
        }
    }
}

impl EnhanceConfig {
    pub fn validate(&self, path: &str) -> Result<(), ConfigError> {
        check_int(&format!("{path}.budget_ms"), self.budget_ms, 1, 200, "ms")?;
        check_int(&format!("{path}.hang_ms"), self.hang_ms, 10, 60_000, "ms")?;
        check_int(&format!("{path}.threads"), self.threads as u64, 1, 64, "threads")?;
        check_range(&format!("{path}.sharp_threshold"), f64::from(self.sharp_threshold), 0.0, 1.0, "")?;
        check_int(&format!("{path}.deblur_scale"), u64::from(self.deblur_scale), 1, 8, "")?;
        if self.sites.is_empty() {
            return Err(ConfigError::new(format!("{path}.sites"), "[]", "at least one site"));
        }
        Ok(())
    }
}
