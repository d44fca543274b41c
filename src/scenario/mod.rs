//! Failure-injection scenarios (`endotower scenario run FILE`): a scenario
//! file names a tower config, a timeline of faults and operator actions, and
//! the invariants to check; the runner drives a tower on simulators through
//! it and writes a report with plots. docs/fault-matrix.md lists the suite.
//!
//! - [`file`]: the scenario file format, strict parsing with field-naming errors.
//! - [`runner`]: config assembly, warm-up, timeline, sampling, end state.
//! - [`record`]: what a run records besides the trace (events, gaps, end state).
//! - [`trace`]: the recorded signals and markers of a run.
//! - [`invariants`]: judging a run, with each invariant's worst case.
//! - [`report`]: `report.json` and `report.md`.
//! - [`plots`]: PNG plots of a trace (plotters).
//! - [`random_faults`]: the soak's seeded random fault draw.
//! - [`camera_faults`]: frozen, black and wrong-size camera frames.
//! - [`mosquitto`]: a broker process the timeline can stop and restart.
//! - [`observer`]: the hospital-side MQTT client (events, replies, commands).
//! - [`journal_fs`]: a tiny tmpfs for the journal, so the disk can fill up.

pub mod camera_faults;
pub mod file;
pub mod invariants;
pub mod journal_fs;
pub mod mosquitto;
pub mod observer;
pub mod plots;
pub mod random_faults;
pub mod record;
pub mod report;
pub mod runner;
pub mod trace;
