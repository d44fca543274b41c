//! endotower: the supervision runtime of an integrated endoscopy /
//! laparoscopy tower. This crate assembles the tower from the actors
//! (`endotower-actors`) and the device simulators (`endotower-sim`).
//!
//! - [`tower_config`]: the whole-tower config (file + environment), validated.
//! - [`tree`]: the supervision tree, declared in one place.
//! - [`tower`]: starting, inspecting and stopping a running tower.
//! - [`logging`]: tracing-subscriber set-up (human or JSON, `RUST_LOG`).
//! - [`cli`]: the `endotower` command line.
//! - [`bench`]: `endotower bench <NAME> [--quick] [--json]`.

pub mod bench;
pub mod cli;
pub mod logging;
pub mod tower;
pub mod tower_config;
pub mod tree;
