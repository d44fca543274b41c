//! A video frame, shared (never copied) between pipeline stages.

use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PixelFormat {
    /// Packed 8-bit R, G, B, row-major, no padding.
    Rgb8,
}

impl PixelFormat {
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            PixelFormat::Rgb8 => 3,
        }
    }
}

/// One captured frame. Stages pass `Arc<Frame>`; the pixel buffer is an
/// `Arc` too, so a frozen source can hand out the very same pixels again.
#[derive(Debug)]
pub struct Frame {
    /// Tower-wide capture sequence number (gaps mean dropped frames).
    pub seq: u64,
    /// When the capture stage received it.
    pub captured_at: Instant,
    pub width: u32,
    pub height: u32,
    pub format: PixelFormat,
    pub pixels: Arc<Vec<u8>>,
}

pub type FrameRef = Arc<Frame>;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FrameError {
    #[error("frame {width}x{height} {format:?} needs {expected} bytes, got {got}")]
    WrongSize { width: u32, height: u32, format: PixelFormat, expected: usize, got: usize },
    #[error("frame size {width}x{height} is outside 16x16 ..= 7680x4320")]
    BadDimensions { width: u32, height: u32 },
}

impl Frame {
    /// Build a frame, checking the buffer matches the dimensions.
    pub fn new(
        seq: u64,
        captured_at: Instant,
        width: u32,
        height: u32,
        format: PixelFormat,
        pixels: Arc<Vec<u8>>,
    ) -> Result<Frame, FrameError> {
        if !(16..=7680).contains(&width) || !(16..=4320).contains(&height) {
            return Err(FrameError::BadDimensions { width, height });
        }
        let expected = width as usize * height as usize * format.bytes_per_pixel();
        if pixels.len() != expected {
            return Err(FrameError::WrongSize { width, height, format, expected, got: pixels.len() });
        }
        Ok(Frame { seq, captured_at, width, height, format, pixels })
    }

    /// RGB of pixel (x, y); the caller keeps x, y in range.
    #[inline]
    pub fn rgb(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_buffer_size_is_an_error_naming_both_sizes() {
        let e = Frame::new(1, Instant::now(), 32, 32, PixelFormat::Rgb8, Arc::new(vec![0; 10])).unwrap_err();
        assert_eq!(e.to_string(), "frame 32x32 Rgb8 needs 3072 bytes, got 10");
        assert!(Frame::new(1, Instant::now(), 8, 32, PixelFormat::Rgb8, Arc::new(vec![0; 768])).is_err());
    }
}
