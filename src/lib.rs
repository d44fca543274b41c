//! endotower: the supervision runtime of an integrated endoscopy /
//! laparoscopy tower. This crate assembles the tower from the actors
//! (`endotower-actors`) and the device simulators (`endotower-sim`).
//!
//! - [`tower_config`]: the whole-tower config (file + environment), validated.
//! - [`tree`]: the supervision tree, declared in one place.
//! - [`video_config`]: the `[video]` section (source, analysis, inference).
//! - [`video_source`]: builds the frame source from config.
//! - [`y4m`]: raw YUV4MPEG2 video files, read and written.
//! - [`file_source`]: recordings (MP4, MKV, ...) decoded by an ffmpeg child process.
//! - [`ycbcr`]: BT.601 YCbCr to RGB (Y4M, V4L2 YUYV).
//! - `v4l2_source` (feature `v4l2`): live capture from a V4L2 device.
//! - [`tower`]: starting, inspecting and stopping a running tower.
//! - [`logging`]: tracing-subscriber set-up (human or JSON, `RUST_LOG`).
//! - [`memory_policy`]: the allocator's mmap threshold, fixed at start-up.
//! - [`cli`]: the `endotower` command line.
//! - [`bench`]: `endotower bench <NAME> [--quick] [--json]`.
//! - [`dataset`]: `endotower dataset`, training data from the synthetic source.
//! - [`device_check`]: `endotower device-check`, a device against the interface contract.
//! - [`snapshot`]: `endotower snapshot`, one composed frame as a PNG.
//! - [`eval`]: `endotower eval detector`, accuracy on a held-out synthetic set;
//!   [`eval_frames`]: the same on labelled (real) frames, per source.
//! - [`mqtt`]: telemetry assembly (journal, broker, endpoint) for a tower.
//! - [`embedded_broker`]: the embedded broker (a supervised mosquitto process) and its health check.
//! - `scenario` (feature `fault-injection`): failure-injection scenarios:
//!   files, runner, report, plots.

pub mod bench;
pub mod cli;
pub mod dataset;
pub mod device_check;
pub mod embedded_broker;
pub mod eval;
pub mod eval_frames;
pub mod file_source;
pub mod logging;
pub mod memory_policy;
pub mod mqtt;
#[cfg(feature = "fault-injection")]
pub mod scenario;
pub mod snapshot;
pub mod tower;
pub mod tower_config;
pub mod tree;
#[cfg(feature = "v4l2")]
pub mod v4l2_source;
pub mod video_config;
pub mod video_source;
pub mod y4m;
pub mod ycbcr;
