//! endotower actors: the device plane, the safety island and the supervision
//! machinery of the tower.
//!
//! Contracts and configuration
//! - [`registers`]: Modbus register maps of every device (shared with `sim/`).
//! - [`config`]: typed config sections with field-naming validation.
//! - [`setpoints`]: the setpoints in force and the safe-state latch (lock-free).
//! - [`events`]: alarms and events bus (edge-triggered alarms, active set).
//! - [`device_status`]: per-device status channels and pedal presses.
//! - [`device_interface`]: every request the tower makes of each device (the
//!   contract of `docs/device-interface.md`, generated from the code).
//!
//! Supervision
//! - [`supervisor`]: restart types, strategies, intensity, hang kill, meltdown.
//! - [`fault_injection`]: test hook: make any supervised actor panic or hang.
//!
//! Device plane (ractor actors on the main runtime)
//! - [`link`]: Modbus link state machine (Connecting/Connected/Degraded/Lost).
//! - [`device_actor`]: the generic polling device actor.
//! - [`insufflator`], [`light`] (with [`pid`]), [`camera`], [`pedal`]: control laws.
//! - [`commands`]: the single validated command path.
//! - [`status_reporter`]: status lines in the log.
//!
//! Safety (its own crate, `endotower-safety`: own threads, runtime, connections)
//! - [`safety_actor`]: the supervised face of the island host: adopts it
//!   across restarts, feeds its alarms to the event bus, reports its links.
//! - [`thread_priority`]: SCHED_FIFO for display and capture, nice for inference.
//!
//! Video path (capture, display sink, analysis, ONNX inference, archive)
//! - [`video`]: its own module map and graph.
//!
//! Hospital systems (DICOM)
//! - [`pacs`]: stills to the PACS (store-and-forward), exam info from the worklist.
//!
//! Telemetry (remote monitoring and control over MQTT)
//! - [`telemetry`]: journal, topics, payloads, remote commands, the MQTT actor.
//!
//! Display (the surgeon's monitor)
//! - [`display`]: overlay model, layout, CPU and wgpu compositors, golden images.
//!
//! Shared
//! - [`error_chain`]: an error and its causes on one line.
//! - [`atomic_file`]: whole files or none (temporary name, fsync, rename).
//!
//! Test support
//! - `tiny_fs` (tests only): run a test body on a tiny tmpfs (disk full).

pub mod atomic_file;
pub mod camera;
pub mod commands;
pub mod config;
pub mod device_actor;
pub mod device_interface;
pub mod device_status;
pub mod display;
pub mod error_chain;
pub mod events;
pub mod fault_injection;
pub mod insufflator;
pub mod light;
pub mod link;
pub mod pacs;
pub mod pedal;
pub mod pid;
pub mod registers;
pub mod safety_actor;
pub mod setpoints;
pub mod status_reporter;
pub mod supervisor;
pub mod telemetry;
pub mod thread_priority;
#[cfg(test)]
mod tiny_fs;
pub mod video;
