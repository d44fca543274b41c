//! Builds the capture stage's frame source from the `[video.source]` config:
//! adapters from the simulator crate's sources, the Y4M reader, recordings
//! decoded by ffmpeg and (feature `v4l2`) V4L2 capture to the actors'
//! `FrameSource`.

use crate::video_config::SourceConfig;
use crate::y4m::Y4mReader;
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

struct Y4m {
    path: String,
    reader: Y4mReader<std::fs::File>,
    looped: bool,
}

impl FrameSource for Y4m {
    fn fps(&self) -> f64 {
        self.reader.fps()
    }
    fn next_frame(&mut self) -> Result<Option<SourceFrame>, SourceError> {
        let err = |e: crate::y4m::Y4mError| SourceError { source_name: self.path.clone(), message: e.to_string() };
        let mut next = self.reader.next_frame().map_err(err)?;
        if next.is_none() && self.looped {
            self.reader.rewind().map_err(err)?;
            next = self.reader.next_frame().map_err(err)?;
        }
        match next {
            Some(rgb) => Ok(Some(SourceFrame { width: self.reader.width(), height: self.reader.height(), rgb })),
            None => Err(SourceError { source_name: self.path.clone(), message: "end of file".into() }),
        }
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
            SourceConfig::Y4m { path, looped } => {
                let reader = Y4mReader::open(path).map_err(|e| SourceError { source_name: path.clone(), message: e.to_string() })?;
                Ok(Box::new(Y4m { path: path.clone(), reader, looped: *looped }))
            }
            SourceConfig::File { path, looped } => Ok(Box::new(crate::file_source::FileSource::open(path, *looped)?)),
            #[cfg(feature = "v4l2")]
            SourceConfig::V4l2 { device, width, height, fps } => {
                Ok(Box::new(crate::v4l2_source::V4l2Source::open(device, *width, *height, *fps)?))
            }
            #[cfg(not(feature = "v4l2"))]
            SourceConfig::V4l2 { device, .. } => Err(SourceError {
                source_name: device.clone(),
                message: "endotower was built without the `v4l2` feature (cargo build --release --features v4l2)".into(),
            }),
        }
    })
}
