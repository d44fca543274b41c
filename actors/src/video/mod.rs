//! The live video path (CN108831533A), built so the AI branch can crash, hang
//! or be slow while the live picture never waits for it:
//!
//! ```text
//! source --> capture thread --watch (latest wins)--> display sink thread
//!                               \--watch (latest wins)--> analysis actor
//!                                    (quality gate, freeze, selector: pedal > freeze > auto)
//!                                        --one in flight, deadline--> inference actor (worker thread:
//!                                             ONNX Runtime here, or an inference server over gRPC)
//!                                        <--watch: latest result, AI status--
//! ```
//!
//! - [`frame`]: the shared frame; [`source`]: where frames come from.
//! - [`capture`] and the display sink (`crate::display::sink`): the pass-through path.
//! - [`quality`], [`freeze`], [`selector`], [`analysis`]: picking target frames;
//!   [`content_area`]: the scene gate (image circle, or no image).
//! - [`onnx`], [`detection`], [`inference`], [`ai_state`]: the AI branch;
//!   [`backend`] and [`remote`]: the detector in the tower or on an inference
//!   server (Open Inference Protocol);
//!   [`model_card`]: where a detector may raise lesion alarms, and a
//!   bring-your-own detector's contract; [`yolo`]: YOLO-style outputs.
//! - [`enhance`]: the optional enhancement stage (sharpness, site, deblurring, in-order release).
//! - [`archive`]: pedal stills with their sidecar; [`channels`]: shared state.

pub mod ai_state;
pub mod analysis;
pub mod archive;
pub mod backend;
pub mod capture;
pub mod channels;
pub mod content_area;
pub mod detection;
pub mod enhance;
pub mod frame;
pub mod freeze;
pub mod inference;
pub mod model_card;
pub mod onnx;
pub mod quality;
pub mod remote;
pub mod selector;
pub mod source;
pub mod yolo;
