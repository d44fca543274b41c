//! The optional enhancement stage (CN109151275A): classify every frame by
//! sharpness and anatomical site, deblur the blurred ones, and put them back
//! in time order, within a fixed latency budget.
//!
//! ```text
//! capture --watch (latest wins)--> enhance worker (own thread, ONNX) --verdicts (broadcast)--+
//!    \------------------------------- raw frames (watch) ------------------------------------+--> display: Sequencer
//! ```
//!
//! The display owns the order: it queues every raw frame it takes and
//! releases the head when its verdict has come (deblurred or unchanged), when
//! its deadline (capture + budget) has passed, or at once while the stage is
//! not active. So enhancement can never stall, reorder or drop the live
//! picture: a crashed, hung or slow stage only means raw frames.
//!
//! - [`config`]: `[video.enhance]`; [`channels`]: switch, status, verdicts, counters.
//! - [`sequencer`]: the in-order release (pure).
//! - [`models`]: the three models and the per-frame work.
//! - [`actor`]: the supervised actor and its worker thread.

pub mod actor;
pub mod channels;
pub mod config;
pub mod models;
pub mod sequencer;
