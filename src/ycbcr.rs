//! BT.601 limited-range YCbCr to RGB8, for the Y4M reader and the V4L2
//! capture source (packed YUYV 4:2:2, the usual format of capture cards).

/// One pixel, BT.601 limited range (Y 16-235, Cb/Cr 16-240), fixed point.
pub fn to_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    let c = (i32::from(y) - 16) * 298;
    let (d, e) = (i32::from(cb) - 128, i32::from(cr) - 128);
    let clamp = |v: i32| ((v + 128) >> 8).clamp(0, 255) as u8;
    [clamp(c + 409 * e), clamp(c - 100 * d - 208 * e), clamp(c + 516 * d)]
}

/// The wrong number of bytes for a packed YUYV image of the given size.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("YUYV {width}x{height}: {got} bytes, at least {expected} expected (stride {stride})")]
pub struct YuyvSizeError {
    pub width: u32,
    pub height: u32,
    pub stride: usize,
    pub expected: usize,
    pub got: usize,
}

/// Packed YUYV (Y0 Cb Y1 Cr per pixel pair) with `stride` bytes per row to
/// RGB8. `width` must be even (V4L2 guarantees it for YUYV).
pub fn yuyv_to_rgb(src: &[u8], width: u32, height: u32, stride: usize) -> Result<Vec<u8>, YuyvSizeError> {
    let (w, h) = (width as usize, height as usize);
    let row = w * 2;
    let stride = stride.max(row);
    let expected = if h == 0 { 0 } else { stride * (h - 1) + row };
    if src.len() < expected || w % 2 != 0 {
        return Err(YuyvSizeError { width, height, stride, expected, got: src.len() });
    }
    let mut rgb = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for pair in src[y * stride..y * stride + row].chunks_exact(4) {
            let (y0, cb, y1, cr) = (pair[0], pair[1], pair[2], pair[3]);
            rgb.extend_from_slice(&to_rgb(y0, cb, cr));
            rgb.extend_from_slice(&to_rgb(y1, cb, cr));
        }
    }
    Ok(rgb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limited_range_black_white_and_grey_map_to_full_range() {
        assert_eq!(to_rgb(16, 128, 128), [0, 0, 0]);
        assert_eq!(to_rgb(235, 128, 128), [255, 255, 255]);
        assert_eq!(to_rgb(126, 128, 128), [128, 128, 128]);
    }

    #[test]
    fn yuyv_pixel_pairs_share_chroma_and_row_padding_is_skipped() {
        // 2x2 image, stride 6 (2 padding bytes per row).
        let src = [16, 128, 235, 128, 9, 9, /* row 2: pure red-ish chroma */ 81, 90, 81, 240, 9, 9];
        let rgb = yuyv_to_rgb(&src, 2, 2, 6).unwrap();
        assert_eq!(&rgb[0..6], &[0, 0, 0, 255, 255, 255]);
        assert_eq!(&rgb[6..9], &rgb[9..12], "the two pixels of a pair share chroma");
        let [r, g, b] = [rgb[6], rgb[7], rgb[8]];
        assert!(r > 200 && g < 40 && b < 40, "BT.601 red, got {r},{g},{b}");
    }

    #[test]
    fn a_short_yuyv_buffer_is_an_error_naming_both_sizes() {
        let e = yuyv_to_rgb(&[0; 10], 4, 2, 8).unwrap_err();
        assert_eq!((e.expected, e.got), (16, 10));
        assert!(e.to_string().contains("16") && e.to_string().contains("10"), "{e}");
    }
}
