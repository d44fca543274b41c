//! ONNX Runtime through the `ort` crate, loaded dynamically from the library of
//! the `onnxruntime` Python wheel (no download at build or run time).
//!
//! A [`Model`] is one session; it is used from one thread at a time (the
//! inference worker's), never from the async runtime.

use std::path::Path;
use std::sync::OnceLock;

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum OnnxError {
    #[error("ONNX Runtime library {path}: {message} (run ./x setup, or set video.inference.runtime_library)")]
    Runtime { path: String, message: String },
    #[error("model {path}: file not found")]
    MissingModel { path: String },
    #[error("model {path}: cannot be loaded: {message}")]
    BadModel { path: String, message: String },
    #[error("model {path}: inference failed: {message}")]
    Run { path: String, message: String },
    #[error("model {path}: has no output `{name}`")]
    MissingOutput { path: String, name: String },
}

static RUNTIME: OnceLock<Result<ort::environment::Environment, OnnxError>> = OnceLock::new();

/// Load the ONNX Runtime shared library once per process. Later calls return
/// the first outcome (the library cannot be swapped in a running process).
pub fn load_runtime(path: &Path) -> Result<(), OnnxError> {
    RUNTIME
        .get_or_init(|| {
            let shown = path.display().to_string();
            if !path.is_file() {
                return Err(OnnxError::Runtime { path: shown, message: "not found".into() });
            }
            let builder = ort::init_from(path).map_err(|e| OnnxError::Runtime { path: shown.clone(), message: e.to_string() })?;
            builder.with_name("endotower").build().map_err(|e| OnnxError::Runtime { path: shown, message: e.to_string() })
        })
        .as_ref()
        .map(|_| ())
        .map_err(Clone::clone)
}

/// One loaded model.
pub struct Model {
    path: String,
    session: ort::session::Session,
}

impl Model {
    /// Open a model with `threads` intra-op threads. The runtime must be loaded.
    pub fn open(path: &Path, threads: usize) -> Result<Model, OnnxError> {
        let shown = path.display().to_string();
        let Some(Ok(env)) = RUNTIME.get() else {
            return Err(OnnxError::Runtime { path: "(not loaded)".into(), message: "load_runtime was not called or failed".into() });
        };
        if !path.is_file() {
            return Err(OnnxError::MissingModel { path: shown });
        }
        let bad = |e: ort::Error| OnnxError::BadModel { path: shown.clone(), message: e.to_string() };
        let session = ort::session::Session::builder(env)
            .map_err(bad)?
            .with_intra_threads(threads.max(1))
            .map_err(|e| bad(e.into()))?
            .with_inter_threads(1)
            .map_err(|e| bad(e.into()))?
            .commit_from_file(path)
            .map_err(bad)?;
        Ok(Model { path: shown, session })
    }

    /// Run with one f32 input; returns the named output's shape and data.
    pub fn run(&mut self, input: &str, shape: [i64; 4], data: Vec<f32>, output: &str) -> Result<(Vec<i64>, Vec<f32>), OnnxError> {
        let path = self.path.clone();
        let err = |e: ort::Error| OnnxError::Run { path: path.clone(), message: e.to_string() };
        let tensor = ort::value::Tensor::from_array((shape, data)).map_err(err)?;
        let outputs = self.session.run(ort::inputs![input => tensor]).map_err(err)?;
        let value = outputs.get(output).ok_or_else(|| OnnxError::MissingOutput { path: path.clone(), name: output.to_string() })?;
        let (shape, data) = value.try_extract_tensor::<f32>().map_err(err)?;
        Ok((shape.iter().copied().collect(), data.to_vec()))
    }
}
