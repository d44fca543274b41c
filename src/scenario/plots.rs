//! PNG plots of a scenario trace (being written on the `plots` branch).
use super::trace::Trace;
use std::path::{Path, PathBuf};
#[derive(Debug, thiserror::Error)]
#[error("plots not built yet")]
pub struct PlotError;
pub fn render(_trace: &Trace, _dir: &Path) -> Result<Vec<PathBuf>, PlotError> {
    Ok(Vec::new())
}
