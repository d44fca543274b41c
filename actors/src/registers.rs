//! The Modbus register maps, defined once in the safety island's crate
//! ([`endotower_safety::registers`]) and re-exported here for the device
//! actors and the simulators.

pub use endotower_safety::registers::*;
