//! [`VideoError`]: everything that can go wrong in the video sources, each
//! variant naming the field, path or byte offset involved.

use std::path::PathBuf;

/// An error of the synthetic source, the Y4M reader and writer, or the dataset
/// writer.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    /// A configuration value is out of range; `field` is its dotted path
    /// (e.g. `episodes.blur_px`).
    #[error("invalid video config `{field}`: {reason}")]
    Config { field: &'static str, reason: String },

    /// A file or directory operation failed.
    #[error("cannot {action} {}: {source}", .path.display())]
    File {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Reading a stream failed at byte `offset`.
    #[error("read error at byte {offset}: {source}")]
    Read {
        offset: u64,
        #[source]
        source: std::io::Error,
    },

    /// Writing a stream failed.
    #[error("write error: {0}")]
    Write(#[source] std::io::Error),

    /// The stream does not start with `YUV4MPEG2 `.
    #[error("not a YUV4MPEG2 stream: byte 0 starts with \"{found}\"")]
    BadMagic { found: String },

    /// A header line has no end within `limit` bytes.
    #[error("y4m {what} starting at byte {offset} has no newline within {limit} bytes")]
    LineTooLong {
        what: &'static str,
        offset: u64,
        limit: usize,
    },

    /// The stream header lacks a required tag (`W` or `H`).
    #[error("y4m stream header has no {tag} tag")]
    MissingTag { tag: char },

    /// A header tag has a value that cannot be used.
    #[error("y4m header tag {tag} at byte {offset}: bad value \"{value}\": {reason}")]
    BadTag {
        tag: char,
        value: String,
        offset: u64,
        reason: &'static str,
    },

    /// The `C` tag names a colour space this reader does not convert.
    #[error("y4m colour space C{value} is not supported (supported: 420jpeg, 420, 420paldv, 420mpeg2, 422, 444, mono; 8-bit)")]
    UnsupportedColourSpace { value: String },

    /// A frame does not start with `FRAME`.
    #[error("y4m frame {index} at byte {offset}: expected a FRAME header, found \"{found}\"")]
    BadFrameHeader {
        index: u64,
        offset: u64,
        found: String,
    },

    /// The stream ended inside a frame.
    #[error("y4m frame {index} truncated: its data starts at byte {offset}, {expected} bytes expected, only {got} present")]
    TruncatedFrame {
        index: u64,
        offset: u64,
        expected: usize,
        got: usize,
    },

    /// An image buffer has the wrong length for its declared size.
    #[error("{what}: buffer of {got} bytes, {expected} expected")]
    BufferSize {
        what: &'static str,
        expected: usize,
        got: usize,
    },

    /// An image size is zero or too large.
    #[error("{what}: invalid size {width}x{height}")]
    Size {
        what: &'static str,
        width: u32,
        height: u32,
    },
}
