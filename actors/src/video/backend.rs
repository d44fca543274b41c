//! Where the detector runs: ONNX Runtime in the tower ([`super::onnx`]) or an
//! inference server ([`super::remote`]). Both take the same pre-processed
//! input tensor and give the raw output tensor; pre- and post-processing
//! ([`super::detection`]) stay in the tower, so the same frame gives the same
//! detections whichever backend ran it.

use super::detection::DetectorContract;
use super::onnx::Model;
use super::remote::{FrameTag, RemoteError, RemoteModel};
use serde::{Deserialize, Serialize};

/// `[video.inference] backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// ONNX Runtime in the tower, on the inference worker's thread.
    #[default]
    Local,
    /// An inference server (`[video.inference.remote]`).
    Remote,
}

/// Why a frame gave no output.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobError {
    /// The model or the worker is broken: the inference actor fails and its
    /// supervisor restarts it.
    #[error("{0}")]
    Broken(String),
    /// The inference server is unavailable (down, slow, garbled reply): the
    /// picture goes on as raw video ("AI offline") and the worker reconnects
    /// with backoff; the actor stays up.
    #[error("{0}")]
    Unavailable(String),
}

impl From<RemoteError> for JobError {
    fn from(e: RemoteError) -> Self {
        JobError::Unavailable(e.to_string())
    }
}

/// One inference on the `[1, 3, S, S]` input of the detector contract `c`.
pub trait Backend {
    fn infer(&mut self, tag: &FrameTag, input: Vec<f32>, c: &DetectorContract) -> Result<(Vec<i64>, Vec<f32>), JobError>;
}

fn input_shape(c: &DetectorContract) -> [i64; 4] {
    let s = i64::from(c.input_size);
    [1, 3, s, s]
}

impl Backend for Model {
    fn infer(&mut self, _tag: &FrameTag, input: Vec<f32>, c: &DetectorContract) -> Result<(Vec<i64>, Vec<f32>), JobError> {
        self.run(&c.input_name, input_shape(c), input, &c.output_name).map_err(|e| JobError::Broken(e.to_string()))
    }
}

impl Backend for RemoteModel {
    fn infer(&mut self, tag: &FrameTag, input: Vec<f32>, c: &DetectorContract) -> Result<(Vec<i64>, Vec<f32>), JobError> {
        Ok(self.run(tag, &c.input_name, input_shape(c), &input, &c.output_name)?)
    }
}

/// The remote backend with the local model as an optional fallback: while
/// the server is unavailable, frames are analysed locally and
/// [`Self::fell_back`] says why.
pub struct RemoteWithFallback {
    pub server: RemoteModel,
    pub local: Option<Model>,
    fell_back: Option<String>,
}

impl RemoteWithFallback {
    pub fn new(server: RemoteModel, local: Option<Model>) -> Self {
        RemoteWithFallback { server, local, fell_back: None }
    }

    /// Why the last frame was analysed locally, if it was.
    pub fn fell_back(&self) -> Option<&str> {
        self.fell_back.as_deref()
    }
}

impl Backend for RemoteWithFallback {
    fn infer(&mut self, tag: &FrameTag, input: Vec<f32>, c: &DetectorContract) -> Result<(Vec<i64>, Vec<f32>), JobError> {
        self.fell_back = None;
        let Some(local) = self.local.as_mut() else { return self.server.infer(tag, input, c) };
        // The input is kept for the fallback only when there is one.
        match self.server.run(tag, &c.input_name, input_shape(c), &input, &c.output_name) {
            Ok(out) => Ok(out),
            Err(e) => {
                self.fell_back = Some(e.to_string());
                local.infer(tag, input, c)
            }
        }
    }
}
