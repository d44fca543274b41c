//! Failure-injection scenarios (`endotower scenario run FILE`): a scenario
//! file names a tower config, a timeline of faults and operator actions, and
//! the invariants to check; the runner drives a tower on simulators through
//! it and writes a report with plots.
//!
//! - [`trace`]: the recorded signals and markers of a run.
//! - [`plots`]: PNG plots of a trace (plotters).

pub mod plots;
pub mod trace;
