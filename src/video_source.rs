//! Builds the capture stage's frame source from the `[video.source]` config:
//! adapters from the simulator crate's sources to the actors' `FrameSource`.

use crate::video_config::SourceConfig;
use endotower_actors::video::capture::SourceFactory;
use endotower_actors::video::source::{FrameSource, SourceError, SourceFrame};
use endotower_sim::video::{SyntheticConfig, SyntheticSource};
use std::sync::Arc;

struct Synthetic(SyntheticSource);

impl FrameSource for Synthetic {
    fn fps(&self) -> f64 {
        self.0.fps()
    }
    fn next_frame(&mut self) -> Result<Option<SourceFrame>, SourceError> {
        Ok(self.0.next_frame().map(|f| SourceFrame { width: f.width, height: f.height, rgb: f.rgb }))
    }
}

/// A factory that builds a fresh source on every capture (re)start.
pub fn factory(cfg: &SourceConfig) -> SourceFactory {
    let cfg = cfg.clone();
    Arc::new(move || -> Result<Box<dyn FrameSource>, SourceError> {
        match &cfg {
            SourceConfig::Synthetic { width, height, fps, seed } => {
                let c = SyntheticConfig { width: *width, height: *height, fps: *fps, seed: *seed, ..SyntheticConfig::default() };
                let s = SyntheticSource::new(c).map_err(|e| SourceError { source_name: "synthetic".into(), message: e.to_string() })?;
                Ok(Box::new(Synthetic(s)))
            }
            SourceConfig::Y4m { path, .. } => Err(SourceError { source_name: path.clone(), message: "Y4M reader not built yet".into() }),
        }
    })
}
