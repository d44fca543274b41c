//! endotower-safety: the safety island as its own software item.
//!
//! It enforces the pressure and temperature interlocks of HAZARDS.md on its
//! own OS thread, with its own Modbus connections, and shares nothing with
//! the rest of the tower but atomics in ([`Inputs`]) and a bounded alarm
//! queue out ([`TripSink`]). README.md in this crate describes what it
//! guarantees and what it assumes.
//!
//! Contracts
//! - [`registers`]: the Modbus register maps of every device (the tower and
//!   the simulators take them from here).
//! - [`config`]: what the island is given ([`IslandConfig`]).
//! - [`trip`]: alarm edges, their codes and priorities, the [`TripSink`].
//!
//! Logic (pure, no I/O)
//! - [`interlocks`]: vent, inflow inhibit, redundant pressure channels,
//!   pressure low, light caps, stuck temperature sensors, and the latches a
//!   successor takes over.
//!
//! Run time
//! - [`modbus`]: the two requests the island makes, framed for TCP and RTU.
//! - [`link`]: its own Modbus client and link state machine (no logging).
//! - [`island`]: the read -> update -> write loop on absolute deadlines.
//! - [`host`]: the watchdog thread and the gap-free hand-over to a new island.
//! - [`priority`]: SCHED_FIFO for the island, the watchdog and the simulators.
//! - `hooks` (feature `fault-injection`): test hooks, absent from releases.

pub mod config;
#[cfg(feature = "fault-injection")]
pub mod hooks;
pub mod host;
pub mod interlocks;
pub mod island;
pub mod link;
pub mod modbus;
pub mod priority;
pub mod registers;
pub mod trip;

pub use config::{DeviceLink, IslandConfig, Transport};
pub use host::{HostStats, IslandHost};
pub use island::{Inputs, IslandStats};
pub use trip::{Trip, TripSink};
