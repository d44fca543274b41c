//! The hospital side of CN108831533A's report terminal: stills to the PACS
//! and exam info from the worklist, in DICOM (dicom-rs).
//!
//! - [`still`]: a pedal still as a VL Endoscopic Image object (one study per
//!   exam, one series per tower).
//! - [`outbox`]: the durable store-and-forward queue on disk.
//! - [`dimse`]: association, C-STORE and C-FIND as an SCU (blocking).
//! - [`sender`]: the PACS actor (backoff, `PACS_UNREACHABLE`).
//! - [`worklist`]: the Modality Worklist actor (fills the exam info).

pub mod dimse;
pub mod outbox;
pub mod sender;
pub mod still;
pub mod worklist;
