//! The remote inference backend: the detector runs on an inference server
//! (KServe, NVIDIA Triton, OpenVINO Model Server) reached with the Open
//! Inference Protocol (KServe v2) over gRPC, as CN108831533A's AI server is
//! reached by many capture terminals.
//!
//! - Pre- and post-processing stay in the tower: the server gets the same
//!   input tensor the local session would, so a frame gives the same
//!   detections either way.
//! - The input goes as raw little-endian bytes; the output is read from raw
//!   bytes or typed `fp32_contents`, whichever the server sends.
//! - The request id is `<tower>/<exam>/<frame seq>`, and the three are also
//!   string parameters, so the server can key its work by exam and device.
//! - Every request has the inference deadline. A failure (refused, reset,
//!   past the deadline, a garbled reply) drops the connection; the next try
//!   waits a backoff that doubles up to `retry_max_ms`.
//!
//! Used from the inference worker's thread only: the client runs on a small
//! runtime of its own, never on the tower's async runtime.

use crate::error_chain::error_chain;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The generated protocol types and client (`proto/grpc_predict_v2.proto`).
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("inference");
}

use pb::grpc_inference_service_client::GrpcInferenceServiceClient;
use pb::infer_parameter::ParameterChoice;
use pb::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use pb::{InferParameter, ModelInferRequest, ModelInferResponse, ModelReadyRequest};
use tonic::transport::{Channel, Endpoint};

/// `[video.inference.remote]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    /// The server's gRPC endpoint, `http://host:port`.
    pub address: String,
    /// The model's name on the server.
    pub model_name: String,
    /// The model's version; empty lets the server choose.
    #[serde(default)]
    pub model_version: String,
    /// First wait before reconnecting after a failure; doubles up to the max.
    #[serde(default = "default_retry_initial_ms")]
    pub retry_initial_ms: u64,
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: u64,
    /// Analyse with the local model while the server is unavailable (the
    /// picture then keeps its AI, and `AI_SERVER_UNAVAILABLE` says why).
    #[serde(default)]
    pub fallback_local: bool,
}

fn default_retry_initial_ms() -> u64 {
    200
}

fn default_retry_max_ms() -> u64 {
    2000
}

impl RemoteConfig {
    pub fn validate(&self, path: &str) -> Result<(), crate::config::ConfigError> {
        use crate::config::{check_int, ConfigError};
        let scheme_ok = self.address.starts_with("http://") || self.address.starts_with("https://");
        if !scheme_ok || Endpoint::from_shared(self.address.clone()).is_err() {
            return Err(ConfigError::new(format!("{path}.address"), format!("{:?}", self.address), "a URL like \"http://host:8001\""));
        }
        if self.model_name.is_empty() {
            return Err(ConfigError::new(format!("{path}.model_name"), "\"\"", "the model's name on the server"));
        }
        check_int(&format!("{path}.retry_initial_ms"), self.retry_initial_ms, 10, 60_000, "ms")?;
        check_int(&format!("{path}.retry_max_ms"), self.retry_max_ms, self.retry_initial_ms, 600_000, "ms")
    }
}

/// Why the server gave no result.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum RemoteError {
    #[error("inference server {address}: cannot connect: {message}")]
    Unreachable { address: String, message: String },
    #[error("inference server {address}: model {model:?} is not ready")]
    NotReady { address: String, model: String },
    #[error("inference server {address}: no answer within {ms} ms")]
    Timeout { address: String, ms: u64 },
    #[error("inference server {address}: {code}: {message}")]
    Status { address: String, code: String, message: String },
    #[error("inference server {address}: bad reply: {what}")]
    BadReply { address: String, what: String },
    #[error("inference server {address}: waiting {ms} ms before reconnecting (last: {last})")]
    Backoff { address: String, ms: u64, last: String },
    #[error("remote inference: cannot start its runtime: {0}")]
    Runtime(String),
}

/// Which frame a request is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameTag {
    pub tower: String,
    pub exam: String,
    pub seq: u64,
}

impl FrameTag {
    pub fn request_id(&self) -> String {
        format!("{}/{}/{}", self.tower, self.exam, self.seq)
    }
}

/// A connection to one model on one inference server.
pub struct RemoteModel {
    cfg: RemoteConfig,
    deadline: Duration,
    rt: tokio::runtime::Runtime,
    client: Option<GrpcInferenceServiceClient<Channel>>,
    /// After a failure: no new try before this.
    retry_at: Option<Instant>,
    delay: Duration,
    last_error: String,
}

impl RemoteModel {
    /// Nothing is contacted yet: the first request (or [`Self::probe`])
    /// connects.
    pub fn new(cfg: RemoteConfig, deadline: Duration) -> Result<RemoteModel, RemoteError> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| RemoteError::Runtime(e.to_string()))?;
        let delay = Duration::from_millis(cfg.retry_initial_ms);
        Ok(RemoteModel { cfg, deadline, rt, client: None, retry_at: None, delay, last_error: String::new() })
    }

    pub fn address(&self) -> &str {
        &self.cfg.address
    }

    /// Whether a failure is being waited out (no connection, backoff running).
    pub fn down(&self) -> bool {
        self.client.is_none() && self.retry_at.is_some()
    }

    /// Time left before the next try may connect.
    pub fn retry_in(&self) -> Option<Duration> {
        self.retry_at.map(|t| t.saturating_duration_since(Instant::now()))
    }

    fn failed(&mut self, e: &RemoteError) {
        self.client = None;
        self.last_error = e.to_string();
        self.retry_at = Some(Instant::now() + self.delay);
        self.delay = (self.delay * 2).min(Duration::from_millis(self.cfg.retry_max_ms));
    }

    /// The reply could not be used (checked after decoding): drop the
    /// connection and wait out a backoff, as for a server that is down.
    pub fn give_up(&mut self, why: &str) {
        let e = RemoteError::BadReply { address: self.cfg.address.clone(), what: why.to_string() };
        self.failed(&e);
    }

    fn succeeded(&mut self) {
        self.retry_at = None;
        self.delay = Duration::from_millis(self.cfg.retry_initial_ms);
    }

    fn wait_out_backoff(&self) -> Result<(), RemoteError> {
        match self.retry_in() {
            Some(left) if !left.is_zero() => {
                Err(RemoteError::Backoff { address: self.cfg.address.clone(), ms: left.as_millis() as u64, last: self.last_error.clone() })
            }
            _ => Ok(()),
        }
    }

    /// Connect (if not connected) and ask whether the model is ready.
    pub fn probe(&mut self) -> Result<(), RemoteError> {
        self.wait_out_backoff()?;
        let outcome = self.rt.block_on(connect_and_check(&self.cfg, self.deadline, self.client.take()));
        match outcome {
            Ok(client) => {
                self.client = Some(client);
                self.succeeded();
                Ok(())
            }
            Err(e) => {
                self.failed(&e);
                Err(e)
            }
        }
    }

    /// One inference: `data` is the `[1, 3, S, S]` f32 input; returns the
    /// named output's shape and data.
    pub fn run(
        &mut self,
        tag: &FrameTag,
        input: &str,
        shape: [i64; 4],
        data: &[f32],
        output: &str,
    ) -> Result<(Vec<i64>, Vec<f32>), RemoteError> {
        if self.client.is_none() {
            self.probe()?;
        }
        let Some(mut client) = self.client.take() else {
            return Err(RemoteError::Unreachable { address: self.cfg.address.clone(), message: "not connected".into() });
        };
        let request = infer_request(&self.cfg, tag, input, shape, data, output);
        let (address, deadline) = (self.cfg.address.clone(), self.deadline);
        let outcome = self.rt.block_on(async {
            let mut req = tonic::Request::new(request);
            req.set_timeout(deadline);
            match tokio::time::timeout(deadline, client.model_infer(req)).await {
                Err(_) => Err(RemoteError::Timeout { address: address.clone(), ms: deadline.as_millis() as u64 }),
                Ok(Err(status)) => Err(status_error(&address, deadline, &status)),
                Ok(Ok(resp)) => read_output(&address, &resp.into_inner(), &tag.request_id(), output),
            }
        });
        match outcome {
            Ok(out) => {
                self.client = Some(client);
                self.succeeded();
                Ok(out)
            }
            Err(e) => {
                self.failed(&e);
                Err(e)
            }
        }
    }
}

async fn connect_and_check(
    cfg: &RemoteConfig,
    deadline: Duration,
    client: Option<GrpcInferenceServiceClient<Channel>>,
) -> Result<GrpcInferenceServiceClient<Channel>, RemoteError> {
    let address = cfg.address.clone();
    let mut client = match client {
        Some(c) => c,
        None => {
            let endpoint = Endpoint::from_shared(address.clone())
                .map_err(|e| RemoteError::Unreachable { address: address.clone(), message: e.to_string() })?
                .connect_timeout(deadline)
                .timeout(deadline)
                .tcp_nodelay(true);
            let channel = tokio::time::timeout(deadline, endpoint.connect())
                .await
                .map_err(|_| RemoteError::Timeout { address: address.clone(), ms: deadline.as_millis() as u64 })?
                .map_err(|e| RemoteError::Unreachable { address: address.clone(), message: error_chain(&e) })?;
            // A 1280 x 720 frame's input at S = 640 is 4.9 MB; room for more.
            GrpcInferenceServiceClient::new(channel).max_decoding_message_size(64 << 20).max_encoding_message_size(64 << 20)
        }
    };
    let mut req = tonic::Request::new(ModelReadyRequest { name: cfg.model_name.clone(), version: cfg.model_version.clone() });
    req.set_timeout(deadline);
    let ready = tokio::time::timeout(deadline, client.model_ready(req))
        .await
        .map_err(|_| RemoteError::Timeout { address: address.clone(), ms: deadline.as_millis() as u64 })?
        .map_err(|s| status_error(&address, deadline, &s))?;
    if !ready.into_inner().ready {
        return Err(RemoteError::NotReady { address, model: cfg.model_name.clone() });
    }
    Ok(client)
}

fn status_error(address: &str, deadline: Duration, s: &tonic::Status) -> RemoteError {
    match s.code() {
        tonic::Code::DeadlineExceeded => RemoteError::Timeout { address: address.into(), ms: deadline.as_millis() as u64 },
        tonic::Code::Unavailable => RemoteError::Unreachable { address: address.into(), message: s.message().into() },
        code => RemoteError::Status { address: address.into(), code: format!("{code:?}"), message: s.message().into() },
    }
}

fn string_param(v: impl Into<String>) -> InferParameter {
    InferParameter { parameter_choice: Some(ParameterChoice::StringParam(v.into())) }
}

/// The request for one frame: the input as raw little-endian FP32 bytes.
pub fn infer_request(cfg: &RemoteConfig, tag: &FrameTag, input: &str, shape: [i64; 4], data: &[f32], output: &str) -> ModelInferRequest {
    let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    let parameters = HashMap::from([
        ("tower_id".to_string(), string_param(tag.tower.clone())),
        ("exam_number".to_string(), string_param(tag.exam.clone())),
        ("frame_seq".to_string(), string_param(tag.seq.to_string())),
    ]);
    ModelInferRequest {
        model_name: cfg.model_name.clone(),
        model_version: cfg.model_version.clone(),
        id: tag.request_id(),
        parameters,
        inputs: vec![InferInputTensor {
            name: input.into(),
            datatype: "FP32".into(),
            shape: shape.to_vec(),
            parameters: HashMap::new(),
            contents: None,
        }],
        outputs: vec![InferRequestedOutputTensor { name: output.into(), parameters: HashMap::new() }],
        raw_input_contents: vec![raw],
    }
}

/// The named FP32 output of a reply, from raw bytes or typed contents, with
/// its shape checked against its data.
pub fn read_output(address: &str, r: &ModelInferResponse, id: &str, name: &str) -> Result<(Vec<i64>, Vec<f32>), RemoteError> {
    let bad = |what: String| RemoteError::BadReply { address: address.into(), what };
    if !r.id.is_empty() && r.id != id {
        return Err(bad(format!("reply id {:?} for request {id:?}", r.id)));
    }
    let Some((index, t)) = r.outputs.iter().enumerate().find(|(_, t)| t.name == name) else {
        let names: Vec<&str> = r.outputs.iter().map(|t| t.name.as_str()).collect();
        return Err(bad(format!("no output {name:?} (outputs: {names:?})")));
    };
    if t.datatype != "FP32" {
        return Err(bad(format!("output {name:?} is {}, expected FP32", t.datatype)));
    }
    if t.shape.iter().any(|d| *d < 0) {
        return Err(bad(format!("output {name:?} has shape {:?}", t.shape)));
    }
    let count: i64 = t.shape.iter().product();
    let data: Vec<f32> = if r.raw_output_contents.is_empty() {
        t.contents.as_ref().map(|c| c.fp32_contents.clone()).unwrap_or_default()
    } else {
        let Some(raw) = r.raw_output_contents.get(index) else {
            return Err(bad(format!("{} raw outputs for {} outputs", r.raw_output_contents.len(), r.outputs.len())));
        };
        if raw.len() % 4 != 0 {
            return Err(bad(format!("output {name:?}: {} raw bytes is not a whole number of FP32 values", raw.len())));
        }
        raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
    };
    if data.len() as i64 != count {
        return Err(bad(format!("output {name:?} has shape {:?} ({count} values) but {} values", t.shape, data.len())));
    }
    Ok((t.shape.clone(), data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::model_infer_response::InferOutputTensor;
    use pb::InferTensorContents;

    fn cfg() -> RemoteConfig {
        RemoteConfig {
            address: "http://127.0.0.1:1".into(),
            model_name: "lesion_detector".into(),
            model_version: String::new(),
            retry_initial_ms: 100,
            retry_max_ms: 400,
            fallback_local: false,
        }
    }

    fn tag() -> FrameTag {
        FrameTag { tower: "or-3".into(), exam: "E-17".into(), seq: 42 }
    }

    fn reply(datatype: &str, shape: Vec<i64>, raw: Option<Vec<u8>>, typed: Vec<f32>) -> ModelInferResponse {
        ModelInferResponse {
            id: tag().request_id(),
            outputs: vec![InferOutputTensor {
                name: "prob_map".into(),
                datatype: datatype.into(),
                shape,
                parameters: HashMap::new(),
                contents: Some(InferTensorContents { fp32_contents: typed, ..Default::default() }),
            }],
            raw_output_contents: raw.into_iter().collect(),
            ..Default::default()
        }
    }

    #[test]
    fn the_request_carries_the_input_as_raw_little_endian_fp32_and_names_tower_exam_and_frame() {
        let r = infer_request(&cfg(), &tag(), "image", [1, 3, 2, 2], &[1.0; 12], "prob_map");
        assert_eq!(r.id, "or-3/E-17/42");
        assert_eq!(r.raw_input_contents[0].len(), 48);
        assert_eq!(&r.raw_input_contents[0][..4], &1.0f32.to_le_bytes());
        assert_eq!((r.inputs[0].datatype.as_str(), r.inputs[0].shape.as_slice()), ("FP32", &[1, 3, 2, 2][..]));
        let p = |k: &str| match &r.parameters[k].parameter_choice {
            Some(ParameterChoice::StringParam(s)) => s.clone(),
            other => panic!("{k}: {other:?}"),
        };
        assert_eq!((p("tower_id"), p("exam_number"), p("frame_seq")), ("or-3".into(), "E-17".into(), "42".into()));
    }

    #[test]
    fn raw_and_typed_outputs_read_the_same() {
        let values = [0.25f32, 0.5, 0.75, 1.0];
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let from_raw = read_output("a", &reply("FP32", vec![1, 1, 2, 2], Some(raw), vec![]), "or-3/E-17/42", "prob_map").unwrap();
        let typed = read_output("a", &reply("FP32", vec![1, 1, 2, 2], None, values.to_vec()), "or-3/E-17/42", "prob_map").unwrap();
        assert_eq!(from_raw, typed);
        assert_eq!(from_raw, (vec![1, 1, 2, 2], values.to_vec()));
    }

    #[test]
    fn a_garbled_reply_is_an_error_naming_what_is_wrong() {
        let id = "or-3/E-17/42";
        let e = read_output("a", &reply("FP32", vec![1, 1, 2, 2], Some(vec![0; 15]), vec![]), id, "prob_map").unwrap_err();
        assert!(e.to_string().contains("15 raw bytes"), "{e}");
        let e = read_output("a", &reply("FP32", vec![1, 1, 2, 2], Some(vec![0; 12]), vec![]), id, "prob_map").unwrap_err();
        assert!(e.to_string().contains("4 values) but 3 values"), "{e}");
        let e = read_output("a", &reply("INT64", vec![1], None, vec![1.0]), id, "prob_map").unwrap_err();
        assert!(e.to_string().contains("INT64"), "{e}");
        let e = read_output("a", &reply("FP32", vec![1], None, vec![1.0]), id, "scores").unwrap_err();
        assert!(e.to_string().contains("no output \"scores\""), "{e}");
        let e = read_output("a", &reply("FP32", vec![1], None, vec![1.0]), "or-3/E-17/43", "prob_map").unwrap_err();
        assert!(e.to_string().contains("reply id"), "{e}");
    }

    #[test]
    fn a_refused_connection_is_unreachable_and_the_next_try_waits_a_doubling_backoff() {
        // Port 1 on loopback: nothing listens there.
        let mut m = RemoteModel::new(cfg(), Duration::from_millis(200)).unwrap();
        let e = m.probe().unwrap_err();
        assert!(matches!(e, RemoteError::Unreachable { .. }), "{e}");
        assert!(m.down());
        let e = m.run(&tag(), "image", [1, 3, 1, 1], &[0.0; 3], "prob_map").unwrap_err();
        assert!(matches!(e, RemoteError::Backoff { .. }), "no new try inside the backoff: {e}");
        std::thread::sleep(Duration::from_millis(110));
        let e = m.probe().unwrap_err();
        assert!(matches!(e, RemoteError::Unreachable { .. }), "{e}");
        assert!(m.retry_in().unwrap() > Duration::from_millis(150), "the wait doubled");
    }

    #[test]
    fn a_bad_address_is_refused_naming_the_field() {
        let mut c = cfg();
        c.address = "127.0.0.1:8001".into();
        let e = c.validate("video.inference.remote").unwrap_err();
        assert!(e.to_string().contains("video.inference.remote.address"), "{e}");
    }
}
