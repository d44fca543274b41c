//! `endotower-sim`: deterministic (seeded) physical simulators of the tower's
//! devices, each served as a real Modbus TCP server (and RTU on serial lines),
//! implementing exactly the register maps of `endotower_safety::registers`
//! and the rules of `docs/device-interface.md`,
//! with faults settable at run time.
//!
//! Module map:
//! - [`config`]: [`SimConfig`] and the physical parameters of every model.
//! - [`device`]: [`Device`], the identity (name, default unit id) of each device.
//! - [`faults`]: [`Fault`], [`FaultKind`], [`Channel`]: injectable faults.
//! - [`host`]: [`SimHost`], which runs everything on its own threads; the probes
//!   and fault hooks; [`SimEndpoints`], [`RtuBus`], [`RtuPort`], [`SimError`].
//! - [`insufflator`], [`light`], `camera`, `pedal`: the physics of each device.
//! - `sim_device`: a device = register table + model + faults + heartbeat, and
//!   how Modbus requests act on it.
//! - `table`: the 32-word register table and the device-independent access rules.
//! - `heartbeat`: the heartbeat fail-safe watchdog every device runs.
//! - `modbus_service`: answering a request with the device's comms faults;
//!   the tokio-modbus `Service` of an RTU bus.
//! - `tcp_server`: the Modbus TCP server, to the byte of the device contract
//!   (malformed requests get exceptions, not a closed connection).
//! - `link`: the `LinkDrop` fault on TCP connections.
//! - `physics`: the physics thread (absolute deadlines, real dt).
//! - `serial`: opening and adopting serial ports for RTU.
//! - [`rng`]: the seeded random source (sensor noise, scenario fault draws).
//! - [`video`]: video sources: [`video::SyntheticSource`] (synthetic endoscopy
//!   with lesion ground truth and disturbances), Y4M file reader and writer,
//!   training-data dump.

#![deny(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod camera;
pub mod config;
pub mod device;
pub mod faults;
mod heartbeat;
pub mod host;
pub mod insufflator;
pub mod light;
mod link;
mod modbus_service;
mod pedal;
mod physics;
pub mod rng;
mod serial;
mod sim_device;
mod table;
mod tcp_server;
pub mod video;

#[cfg(test)]
mod tests;

pub use config::{CameraModel, InsufflatorModel, LightModel, SimConfig, SimConfigError};
pub use device::Device;
pub use faults::{Channel, Fault, FaultKind};
pub use host::{RtuBus, RtuPort, SimEndpoints, SimError, SimHost};
pub use insufflator::InsufflatorSnapshot;
pub use light::LightSnapshot;
