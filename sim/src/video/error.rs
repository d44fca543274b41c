//! [`VideoError`]: what can go wrong in the synthetic source, naming the field
//! involved. (The Y4M reader/writer and dataset dump live in the tower crate,
//! with their own errors.)

/// An error of the synthetic source.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    /// A configuration value is out of range; `field` is its dotted path
    /// (e.g. `episodes.blur_px`).
    #[error("invalid video config `{field}`: {reason}")]
    Config { field: &'static str, reason: String },
}
